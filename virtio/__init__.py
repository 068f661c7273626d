"""What the virtio driver and device share because the specification defines it."""
