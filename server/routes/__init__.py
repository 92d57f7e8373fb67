"""HTTP routes: thin handlers that validate, call the store or core, and answer."""
