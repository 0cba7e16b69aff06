"""Templates' URLs are remembered per app (app/core/urls.py): the same as url_for's."""
from flask import render_template_string, url_for


def test_remembered_urls_are_url_fors(app):
    template = ("{{ url_for('seller.batch_detail', batch_id=7) }}|{{ url_for('static', "
                "filename='css/app.css') }}|{{ url_for('main.index', _external=True) }}")
    with app.test_request_context("/", base_url="http://example.test/shop"):
        first = render_template_string(template)
        again = render_template_string(template)
        expected = "|".join([url_for("seller.batch_detail", batch_id=7),
                             url_for("static", filename="css/app.css"),
                             url_for("main.index", _external=True)])
    assert first == again == expected
    assert first.startswith("/shop/seller/batches/7|/shop/static/")
    with app.test_request_context("/"):  # another script root: its own URLs
        assert render_template_string(template).startswith("/seller/batches/7|/static/")


def test_equal_values_of_other_types_are_other_urls(app):
    with app.test_request_context("/"):
        one = render_template_string("{{ url_for('main.index', page=1) }}")
        true = render_template_string("{{ url_for('main.index', page=True) }}")
    assert (one, true) == ("/?page=1", "/?page=True")
