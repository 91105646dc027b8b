"""The control plane: keys, users, budgets, pricing and usage queries behind the admin API."""
