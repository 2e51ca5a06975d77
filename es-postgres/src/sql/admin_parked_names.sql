-- The projections that have parked events, by name.
SELECT DISTINCT projection FROM {schema}.parked_events ORDER BY projection
