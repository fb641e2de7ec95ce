"""The phone-sized web page for drivers and owners (issue 13), served on the admin port.

Server-rendered HTML, every page under 30 kB with its CSS inline and no script, fonts or
images to fetch: a cheap phone on 2G gets the whole page in one round trip or two. Every flow
is a plain form: POST, then a redirect to a GET (so a reload never repeats a start or a stop).

- app.py: the Starlette app, its session cookie and its error pages;
- mount.py: the web app and the admin API on one port, told apart by path;
- security.py: who is signed in, the CSRF token every POST carries, sign-in rate limits;
- secret.py: the key that signs the session cookie;
- signin.py, driver.py, owner.py: the routes; queries.py: the store jobs they read with, each
  scoped to the person signed in;
- render.py: Jinja2 templates (autoescaped) and the filters for money, energy and time.
"""
