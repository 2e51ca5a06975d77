-- Tells other processes' subscribers that events were appended, on the channel $1: a
-- function (migration 0009) so that conditional appends need not wait for this short
-- transaction.
SELECT {schema}.es_notify($1)
