"""HTTP views: pages, the JSON API, health and metrics."""
