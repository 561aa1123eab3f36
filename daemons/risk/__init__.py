"""The risk daemon: the order desk in front of the gateway, and its pre-trade check chain
(limits, checks, order state)."""
