"""The risk daemon: the order desk in front of the gateway, and its checks."""
