"""HTTP presentation shared by the registration Lambda and `connect-metering serve`: server-rendered HTML
(escaped, no scripts, no external assets), security headers, form and cookie parsing."""
