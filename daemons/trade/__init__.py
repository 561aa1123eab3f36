"""The order wing's exchange-facing parts: the position book and the gateways it sits beside."""
