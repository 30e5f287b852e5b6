"""The YAML configs of training and accelerate, installed as `mixingbuddy.configs` (see `mixingbuddy.config_file`)."""
