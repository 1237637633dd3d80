"""Runtime shared by every service: settings, faust app factory, codecs, dead letters, metrics,
database, the local broker and the command line. Written once here, used by all four services."""
