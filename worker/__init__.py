"""What runs inside a worker process: media, faces, detectors, aggregation. No Celery, no SQL."""
