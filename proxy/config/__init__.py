"""Configuration: Miredo-syntax files, command-line flags, one frozen object per role.

Loading order is defaults, then the ``-c`` file, then flags; each role's
``*Config.validate`` runs once and names the bad field.  Cores receive these
objects, never argparse namespaces.
"""

from proxy.config.miredo import MiredoConf, read_miredo_conf

__all__ = ["MiredoConf", "read_miredo_conf"]
