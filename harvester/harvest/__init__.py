"""The harvest: talking to the API at the rate it allows, and what to do with each answer.

`client` (one request, one classified answer, its headers read by `limits`, a 200's
body checked by `answers`), `network` (the one aiohttp session: TLS trust, the proxy,
bounded answers), `ratelimit` (the shared rate controller, with `pacer`,
`ratesignals` and `ratestate`), `quota` (the tweet-ID quota and its ladder of modes),
`policy` (an answer's meaning for its job), `reactions` (its meaning for the whole
harvest: a rejected key or a connection the settings forbid, a rate limit, a quota
refusal, an allowance spent), and the pipeline: `feeder` -> `workers` -> writer, run
by `pipeline.Harvest`, which says how it went in `report`; beside it, `discovery`
(pages of the citations call into the store) and `schedule` (discovery and refresh on
a timer, in the same rate budget).
"""
