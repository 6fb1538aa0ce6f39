"""What an API key may do beyond its scopes, what it has done, and who changed it: its
limits (limits), its usage per day (usage), the rules of minting and editing keys with
the audit trail (services), and the chart of /settings (chart)."""
