"""``make bench-gatherer``: one gatherer process vs a bare receive loop on the same emulator (see __main__)."""
