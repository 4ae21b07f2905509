"""The spatio-temporal UNet: its configurable network, layers, attention backends, hooks and layer factories."""
