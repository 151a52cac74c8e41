#!/bin/sh
# Rebuild web/static/govuk from GOV.UK Frontend (the version govuk-frontend-jinja targets).
# Needs Node and npm at build time only; the output is committed, so nothing runs Node at run time.
# The stylesheet is compiled from the Sass sources with the system font stack instead of GDS
# Transport (licensed for GOV.UK domains only), so no font files are shipped or requested.
set -eu
VERSION="${1:-6.3.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm pack "govuk-frontend@$VERSION" >/dev/null
tar xzf "govuk-frontend-$VERSION.tgz"
npm install --no-save --silent sass@1 >/dev/null
cat > main.scss <<'SCSS'
@use "govuk" with (
  $govuk-font-family: (system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif),
  $govuk-assets-path: "/static/govuk/assets/"
);
SCSS
node_modules/.bin/sass --load-path=package/dist --style=compressed --no-source-map --quiet-deps main.scss out.css
OUT="$ROOT/web/static/govuk"
rm -rf "$OUT" && mkdir -p "$OUT/assets"
cp out.css "$OUT/govuk-frontend.min.css"
cp package/dist/govuk/govuk-frontend.min.js "$OUT/"
cp -r package/dist/govuk/assets/images "$OUT/assets/"
cp package/dist/govuk/assets/manifest.json "$OUT/assets/"
echo "$VERSION" > "$OUT/VERSION"
echo "GOV.UK Frontend $VERSION vendored into $OUT"
