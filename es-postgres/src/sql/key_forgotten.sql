-- The record of the forgetting of subject $1, if it was forgotten.
SELECT forgotten_by, forgotten_at FROM {schema}.forgotten_subjects WHERE subject = $1
