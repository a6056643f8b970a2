"""A webhook receiver for the README tour: prints each verified event.

    WEBHOOK_SECRET=whsec_... python -m examples.webhook_receiver   # listens on 127.0.0.1:8900

The code below is docs/partners.md's receiver example, line for line (a test holds them equal
and runs it).
"""

# --- receiver ---
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["WEBHOOK_SECRET"])


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        try:
            event = webhook.verify(body, dict(self.headers))  # raises unless signed with our secret
        except WebhookVerificationError:
            return self.send_error(400, "bad signature")
        print(event["type"], event["data"], flush=True)
        self.send_response(204)
        self.end_headers()


HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8900"))), Receiver).serve_forever()
