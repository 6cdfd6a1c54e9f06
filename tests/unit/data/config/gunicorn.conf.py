# A config file written for gunicorn: monoceros must load it unchanged, without warnings.
import multiprocessing
import os

bind = ["127.0.0.1:9001", "unix:/tmp/monoceros-test.sock"]
backlog = 512
workers = multiprocessing.cpu_count() * 2 + 1
worker_class = "gunicorn.workers.sync.SyncWorker"
timeout = 60
graceful_timeout = 20
keepalive = 5
max_requests = 1000
max_requests_jitter = 50
limit_request_line = 8190
limit_request_field_size = 16380
preload_app = True
accesslog = "-"
errorlog = "-"
loglevel = "warning"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(L)s'
proc_name = "legacy-site"
raw_env = ["DJANGO_SETTINGS_MODULE=site.settings"]
forwarded_allow_ips = "*"
secure_scheme_headers = {"X-Forwarded-Proto": "https"}
pidfile = os.path.join(os.path.dirname(__file__), "legacy.pid")


def when_ready(server):
    server.log.info("ready")


def post_fork(server, worker):
    server.log.info("worker spawned (pid: %s)", worker.pid)


def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)


def post_request(worker, req, environ):
    pass


def worker_int(worker):
    worker.log.info("worker received INT or QUIT signal")


def worker_abort(worker):
    worker.log.info("worker received SIGABRT signal")
