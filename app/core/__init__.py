"""Infrastructure every area shares and no rule of the market lives in."""
