"""A3C on Atari River Raid with hand-differentiated layers."""
