"""nin-repro: reproduce the tables of *Network In Network* (Lin, Chen, Yan, ICLR 2014)."""

__version__ = "0.1.0"
