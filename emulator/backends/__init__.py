"""Where the device's frames go: the in-memory wire (and later pcap, tap, vhost-user)."""
