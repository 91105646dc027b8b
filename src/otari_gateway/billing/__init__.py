"""Money: prices, cost from usage, budget periods, and the reserve-then-settle ledger."""
