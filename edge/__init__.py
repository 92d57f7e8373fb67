"""Pure signal processing for the hub: fall and vital-sign detection (numpy/scipy, no I/O)."""
