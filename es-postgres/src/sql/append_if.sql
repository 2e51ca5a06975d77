-- A conditional append, or (with no events) the check of a condition alone: migration
-- 0008's es_append_if, which says what each parameter is and what it raises. Returns the
-- inserted rows, as the other appends do.
SELECT position, transaction_id, version, recorded_at
FROM {schema}.es_append_if($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                           $15, $16, $17, $18)
