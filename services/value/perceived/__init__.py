"""Customer-perceived value against competitors (issue 14 §5): the attributes customers judge,
their weights, the competitors, the ratings of us and of them, and Gale's value map."""
