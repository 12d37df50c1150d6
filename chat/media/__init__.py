"""Image bytes in and out: uploads decoded and checked, painted regions as masks and marked copies."""
