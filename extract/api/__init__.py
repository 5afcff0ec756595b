"""The ACE API: requests, pacing, pages, and decoding and parsing what the API sends.

- `budget`: One request budget per API key, shared by every process on the machine that uses the key.
- `client`: The ACE IoT API client: one connection pool, bearer auth, the retry policy and the shared rate
  limit.
- `decode`: Pure transform: timeseries page bytes -> one text frame of raw samples (RAW_COLUMNS), plus the
  cursor.
- `fields`: Reading the loosely typed fields of the API's records (points, sites): any field may be missing or
  null, a number may come as text, and a nested object or list may come as JSON text.
- `pagination`: Cursor pagination over a site's timeseries for one window, one page at a time.
- `parse`: Pure transform: raw text samples (`extract.api.decode`) -> (typed rows, rejects).
- `points`: Which points to keep: exact names and glob patterns, from a list, a file or the API's configured
  points.
- `prefetch`: Fetch the next page while the current one is landed.
- `ratelimit`: Client-side rate limiting: one pacing rule, held in-process (`RateLimiter`) or across processes
  (`extract.api.budget.SharedBudget`).
- `retry`: Retry policy as data: the one description of how hard the client tries before it gives up.
- `sites`: Sites as a dimension: each site's record from the API, its time zone, and the overrides of it.
- `weather`: Pure transform: weather JSON of either API shape -> rows of the landing's weather schema.
"""

MAX_PAGE_SIZE = 100_000
"""The largest page the ACE IoT API serves (here, where importing it costs nothing: the CLI's defaults use it)."""
