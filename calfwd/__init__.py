"""calfwd: keep Calico's traffic allowed by firewalld and its natOutgoing alive across reloads."""

__version__ = "0.1.0"
