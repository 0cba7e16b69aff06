"""Real-time leads with live bids (SPEC §4 rule 9, §11, §12): ping/post.

- `pinger` (I/O, no database): one asyncio loop and one aiohttp connection pool per
  process; asks many bid URLs at once within a deadline;
- `auction` (jobs, commit): a real-time lead offered to the bidding orders and sold
  to the best offer, a seller's ping and its post.
The winner is chosen by app.market.bidding (pure) with the market's rules."""
