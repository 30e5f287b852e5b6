"""The YAML configs of training and accelerate, installed with the package as `mixingbuddy.configs` (see `mixingbuddy.config_file`)."""
