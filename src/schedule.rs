//! When a host is due: crontab lines, "at least every", blackout windows, failure backoff.
//! Pure functions of (rules, history, now); the daemon acts on their answers.
