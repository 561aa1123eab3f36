"""The risk daemon's pre-trade check chain: limits, checks, order state, the chain itself."""
