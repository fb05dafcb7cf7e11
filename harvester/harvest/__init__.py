"""The harvest: talking to the API at the rate it allows, and what to do with each answer."""
