"""Trading, the exchange-facing side of the order wing: the simulated exchange, the position
book, and the gateway plugins that host them in the risk daemon."""
