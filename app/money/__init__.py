"""Money documents (SPEC §5, issue 16): receipts for every top-up, withdrawal and
payout, monthly statements per account, and their PDF rendering. The movements
themselves stay in app/services (ledger, payments, bank transfers, manual payouts)."""
