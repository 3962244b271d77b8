"""unittest (or any framework without pytest fixtures): RunningNetwork.

``proxy.testing.background.RunningNetwork`` runs the network on a thread
of its own, so synchronous code can use it.  Start one per class (or per
module) to share its start-up cost.  Run with ``python -m unittest`` or
pytest alike.
"""

import unittest

from proxy.testing.background import RunningNetwork

import ipv6check


class FetchOverTeredo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.net = RunningNetwork(nat="restricted", seed=11)
        cls.net.start()
        cls.addClassCleanup(cls.net.close)

    def test_index(self):
        body = ipv6check.fetch(self.net.web_url, proxy=self.net.socks_url)
        self.assertIn(b"through Teredo", body)

    def test_file_added_by_the_test(self):
        url = self.net.add_file("/report.csv", b"a,b\n1,2\n")
        self.assertEqual(ipv6check.fetch(url, proxy=self.net.socks_url), b"a,b\n1,2\n")

    def test_client_has_a_teredo_address(self):
        self.assertTrue(self.net.client_address.startswith("2001:0:"))


if __name__ == "__main__":
    unittest.main()
