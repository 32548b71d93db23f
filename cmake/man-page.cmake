# Writes one man page with help2man, and OUTPUT.gz (gzip -9n: no name or time stamp, so the
# package is reproducible): cmake -DHELP2MAN=... -DPROGRAM=... -DNAME=... -DINCLUDE=...
# -DOUTPUT=... -DVERSION=... [-DEMULATOR=qemu-aarch64-static] -P man-page.cmake
# (EMULATOR, in a cross build, runs PROGRAM; help2man itself only reads the text it printed.)
#
# INCLUDE (man/<program>.h2m) holds what reads best written by hand, as Debian's pages do: the
# SYNOPSIS, DESCRIPTION, EXAMPLES, EXIT STATUS, FILES, SEE ALSO. help2man makes the OPTIONS
# section from --help, which is first cut to its option lists: the help's own footer (examples,
# exit codes) is in INCLUDE, and help2man would take its lines for options ("stcat listen" as a
# flag). CLI11's type hints ("N:UINT in [0 - 256]") are cut to the value's name, and "-h,--help"
# is spaced as "-h, --help". A program with subcommands (stmgr, stcat) gets each subcommand's
# description and options, made by help2man the same way, in a SUBCOMMANDS section.
cmake_policy(VERSION 3.25)
get_filename_component(program_name ${PROGRAM} NAME)
separate_arguments(emulator UNIX_COMMAND "${EMULATOR}")
get_filename_component(output_dir ${OUTPUT} DIRECTORY)
set(wrap_dir ${output_dir}/help2man-${program_name})
file(MAKE_DIRECTORY ${wrap_dir})

# The --help of `PROGRAM ARGS...`, cut to its description line and option lists, into `out`.
function(option_help out)
  execute_process(COMMAND ${emulator} ${PROGRAM} ${ARGN} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${PROGRAM} ${ARGN} --help failed (${rc})")
  endif()
  string(REPLACE ";" "\\;" help "${help}")
  string(REPLACE "\n" ";" lines "${help}")
  set(kept "")
  set(after_blank FALSE)
  foreach(line IN LISTS lines)
    if(after_blank AND NOT line MATCHES "^(Options|Positionals|Subcommands|SUBCOMMANDS):|^\\[Option Group")
      break()  # a footer paragraph: the rest is prose and examples
    endif()
    set(after_blank FALSE)
    if(line STREQUAL "")
      set(after_blank TRUE)
    elseif(line MATCHES "^\\[Option Group: (.*)\\]$")
      set(line "${CMAKE_MATCH_1}:")  # help2man makes a subsection of a "Heading:" line
    elseif(line MATCHES "^  Options:$")
      continue()  # the group's own "Options:" line
    elseif(line MATCHES "^    -")
      # A group's options are indented by 4, so a long flag can meet its description with one
      # space between, which help2man cannot split: out-dent by 2 and keep two spaces.
      string(REGEX REPLACE "^    (-.........................[^ ]) ([^ ])" "  \\1  \\2" line "${line}")
      string(REGEX REPLACE "^    -" "  -" line "${line}")
    endif()
    string(REGEX REPLACE "([A-Z]+):[A-Z]+ in \\[[^]]*\\]" "\\1" line "${line}")
    string(REGEX REPLACE "TEXT:{([^}]*)}" "{\\1}" line "${line}")
    string(REGEX REPLACE "^( +-[A-Za-z0-9]),--" "\\1, --" line "${line}")
    string(APPEND kept "${line}\n")
  endforeach()
  set(${out} "${kept}" PARENT_SCOPE)
endfunction()

# help2man's page for a script that prints `help` as its --help; the page goes into `out`.
function(help2man_of name help out)
  set(script ${wrap_dir}/${name})
  file(WRITE ${script} "#!/bin/sh\ncat <<'END_OF_HELP'\n${help}END_OF_HELP\n")
  file(CHMOD ${script} PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)
  set(page ${wrap_dir}/${name}.1)
  execute_process(
    COMMAND ${HELP2MAN} --no-info --section=1 --name=${NAME} --version-string=${VERSION}
            ${ARGN} --output=${page} ${script}
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "help2man failed for ${name} (${rc})")
  endif()
  file(READ ${page} text)
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

set(text "")
if(EXISTS ${INCLUDE})
  file(READ ${INCLUDE} text)
endif()

option_help(help)
string(REGEX MATCH "\n(Subcommands|SUBCOMMANDS):\n[^\n]*(\n  [^\n]*)*" subcommands "${help}")
if(subcommands)
  set(section "[SUBCOMMANDS]\n")
  string(REPLACE "\n" ";" lines "${subcommands}")
  foreach(line IN LISTS lines)
    if(NOT line MATCHES "^  ([a-z][a-z0-9-]*)( |$)")
      continue()
    endif()
    set(sub ${CMAKE_MATCH_1})
    option_help(sub_help ${sub})
    help2man_of(${program_name}-${sub} "${sub_help}" sub_page)
    # The description (DESCRIPTION's first paragraph) and the options, subsections made
    # into italic headings under the subcommand's own subsection.
    string(REGEX MATCH "\n\\.SH DESCRIPTION\n([^\n]*)" _ "${sub_page}")
    set(description "${CMAKE_MATCH_1}")
    string(REGEX MATCH "\n\\.SH OPTIONS\n(.*)" _ "${sub_page}")
    set(options "${CMAKE_MATCH_1}")
    string(REGEX REPLACE "\n\\.SH .*" "" options "${options}")
    string(REGEX REPLACE "(^|\n)\\.SS ([^\n]*)" "\\1.PP\n.I \\2" options "${options}")
    string(REGEX MATCH "\nUsage: [^\n]*" usage "${sub_help}")
    string(REGEX REPLACE "^\nUsage: " "" usage "${usage}")
    string(APPEND section ".SS \"${program_name} ${sub}\"\n${description}\n.PP\n.B ${usage}\n"
           "${options}\n")
  endforeach()
  string(APPEND text "\n${section}")
endif()
set(include_all ${OUTPUT}.h2m)
file(WRITE ${include_all} "${text}")

# The program's own first line ("stcat: pipe bytes ...") repeats NAME: help2man gets the rest.
string(FIND "${help}" "\n" first_end)  # (REGEX REPLACE "^..." would match again and again)
math(EXPR first_end "${first_end} + 1")
string(SUBSTRING "${help}" ${first_end} -1 help)
help2man_of(${program_name} "${help}" page --include=${include_all})
file(WRITE ${OUTPUT} "${page}")

execute_process(COMMAND gzip -9 -n -c ${OUTPUT} OUTPUT_FILE ${OUTPUT}.gz RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gzip failed for ${OUTPUT} (${rc})")
endif()
