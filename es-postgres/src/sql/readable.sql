-- Whether transaction $1 is below the horizon: its events are readable.
SELECT $1::xid8 < (SELECT {schema}.es_horizon())
