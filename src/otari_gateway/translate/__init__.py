"""Pure conversions between the OpenAI Chat, Anthropic Messages and Responses formats."""
