"""Rate limits, the daily spend cap and whether a turn may run (admission), shared by every replica's database."""
