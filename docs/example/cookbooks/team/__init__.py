"""Node maintenance (the example tree of the guide "Writing a cookbook")"""

__owner_team__ = "Infrastructure"
