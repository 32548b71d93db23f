# Installation (cmake --install) and the Debian package (CPack DEB). Included from the top
# CMakeLists.txt.
