"""Writing files so that nothing is lost: atomic writes and staged folders (safe_io), one run
per output folder (run_lock). Used by every other folder; imports none of them."""
