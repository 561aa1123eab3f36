"""Trading: the simulated exchange, the position book and the gateways (issue 10)."""
