-- Grants role $1 what running the store takes (migration 0006).
SELECT {schema}.es_grant_application($1)
