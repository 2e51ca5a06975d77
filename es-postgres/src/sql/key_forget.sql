-- Forgets subject $1 at the request of $2 (es_forget_subject of migration 0011): deletes its
-- key and records it, or returns the first record if it was forgotten already. At READ
-- COMMITTED only.
SELECT forgotten_by, forgotten_at FROM {schema}.es_forget_subject($1, $2)
