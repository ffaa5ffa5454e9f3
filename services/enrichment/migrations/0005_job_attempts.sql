-- A job whose worker died (or whose request event was lost) is handed out again by the
-- abandoned-job sweep: `handed_out_at` is when it last was, `attempts` how many times, so a job
-- that kills its worker every time ends failed instead of looping.
ALTER TABLE enrichment_jobs ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE enrichment_jobs ADD COLUMN handed_out_at timestamptz;
CREATE INDEX enrichment_jobs_unfinished ON enrichment_jobs (created_at) WHERE status IN ('queued', 'running');
