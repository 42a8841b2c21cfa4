"""Lightning strategies of the app."""
