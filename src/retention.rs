//! Which snapshots to keep: borg/restic-style `keep` rules and the free-space floor.
//! Pure functions of (snapshots, rules, now); the prune command and the daemon act on them.
