"""Pages people use: the consumer's trace page (``/t/{code}``) and the regulator's console (``/console``).

``views.py`` shapes the public view into what the consumer page shows (pure), ``templates.py`` renders
HTML with autoescaping and the pages' security headers, ``session.py`` keeps the console's sign-in cookie
and CSRF tokens, ``pages.py`` holds the routes. Static assets (CSS, JavaScript written here, no CDN)
live in ``static/`` and are served by the app itself.
"""
